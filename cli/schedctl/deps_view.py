"""``schedctl job deps``: the dependency graph around a job as a tree for people, or as
Graphviz ``dot`` / ``mermaid`` text. Pure: built from the nodes GetDependencies answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schedctl import output


def _last(node: Any) -> str:
    run = node.last
    if run is None:
        return "no runs yet"
    state = output.run_state(run.state)
    if state == "skipped":
        state += f" ({output.skip_reason(run.skip_reason)})"
    elif state == "waiting" and run.waiting_for:
        state += f" for {', '.join(run.waiting_for)}"
    return f"{state}, slot {output.when(run.scheduled_ms)}"


def _label(node: Any) -> str:
    job = node.job
    sched = output.schedule_text(job.schedule, bool(job.depends_on))
    parts = [sched if job.schedule.kind else "no schedule"]
    if job.depends_on:
        parts.append(output.trigger_rule(job.trigger_rule))
    text = f"{job.name}  [{'; '.join(parts)}]  last: {_last(node)}"
    if node.waiting:
        text += f"  ({len(node.waiting)} waiting)"
    return text


@dataclass(frozen=True)
class Graph:
    """The jobs by name (the first is the one asked about) and the edges between them:
    (from, to, kind) with kind ``depends_on``, ``on_success`` or ``on_failure``."""

    root: str
    nodes: dict[str, Any]
    edges: tuple[tuple[str, str, str], ...]

    @classmethod
    def of(cls, nodes: Sequence[Any]) -> Graph:
        by_name = {n.job.name: n for n in nodes}
        edges: list[tuple[str, str, str]] = []
        for n in nodes:
            j = n.job
            edges += [(u, j.name, "depends_on") for u in j.depends_on if u in by_name]
            for kind in ("on_success", "on_failure"):
                target = getattr(j, kind)
                if target and target in by_name:
                    edges.append((j.name, target, kind))
        return cls(nodes[0].job.name if nodes else "", by_name, tuple(edges))

    def _up(self, name: str) -> list[tuple[str, str]]:
        return sorted((a, k) for a, b, k in self.edges if b == name)

    def _down(self, name: str) -> list[tuple[str, str]]:
        return sorted((b, k) for a, b, k in self.edges if a == name)

    def tree(self) -> str:
        """The job, then its upstreams (what it waits for) and its downstreams (what waits for
        it), each branch to its end; a job seen before on the same branch is marked."""
        if not self.root:
            return "no such job"
        lines = [_label(self.nodes[self.root])]
        for title, step in (
            ("upstream (it runs after these):", self._up),
            ("downstream (these run after it):", self._down),
        ):
            first = step(self.root)
            if not first:
                continue
            lines.append(title)
            self._branch(lines, first, step, "", {self.root})
        return "\n".join(lines)

    def _branch(
        self,
        lines: list[str],
        items: list[tuple[str, str]],
        step: Any,
        indent: str,
        path: set[str],
    ) -> None:
        for i, (name, kind) in enumerate(items):
            last = i == len(items) - 1
            how = "" if kind == "depends_on" else f"({kind.replace('_', ' ')}) "
            seen = name in path
            label = _label(self.nodes[name]) if name in self.nodes else name
            lines.append(
                f"{indent}{'└── ' if last else '├── '}{how}{label}" + (" (cycle)" if seen else "")
            )
            if not seen:
                self._branch(
                    lines, step(name), step, indent + ("    " if last else "│   "), path | {name}
                )

    def dot(self) -> str:
        """Graphviz: ``dot -Tsvg``. Dependencies are solid arrows (upstream -> downstream),
        chains dashed; each job shows its last outcome."""
        out = ["digraph deps {", "  rankdir=LR;", "  node [shape=box];"]
        for name, node in self.nodes.items():
            style = ", style=bold" if name == self.root else ""
            out.append(f'  "{name}" [label="{name}\\n{_esc(_last(node))}"{style}];')
        for a, b, kind in self.edges:
            attr = "" if kind == "depends_on" else f' [style=dashed, label="{kind}"]'
            out.append(f'  "{a}" -> "{b}"{attr};')
        out.append("}")
        return "\n".join(out)

    def mermaid(self) -> str:
        """Mermaid ``flowchart LR`` (renders in GitHub, GitLab and most docs tools)."""
        ids = {name: f"j{i}" for i, name in enumerate(self.nodes)}
        out = ["flowchart LR"]
        for name, node in self.nodes.items():
            out.append(f'  {ids[name]}["{_esc(name)}<br/>{_esc(_last(node))}"]')
        for a, b, kind in self.edges:
            arrow = "-->" if kind == "depends_on" else f"-. {kind} .->"
            out.append(f"  {ids[a]} {arrow} {ids[b]}")
        if self.root in ids:
            out.append(f"  style {ids[self.root]} stroke-width:3px")
        return "\n".join(out)


def _esc(text: str) -> str:
    return text.replace('"', "'")
