"""The dashboard's HTTP routes (Starlette): sign-in, the five views, and the actions.

Every read and every action is an SDK call made as the signed-in user (:mod:`schedd.web.gateway`);
the pages only arrange what the API answered (:mod:`schedd.web.viewmodel`). Actions are POSTs
carrying the session's CSRF token; they answer with a redirect back to the page (post, redirect,
get) and a message saying what happened, or the API's refusal in words: never a traceback.
A page asked with ``?_fragment=1`` returns only its live part; ``static/dash.js`` polls it every
two seconds to keep the page current without a reload.
"""

from __future__ import annotations

import logging
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schedd import errors, namespaces
from schedd.client import Client
from schedd.models import RunState
from schedd.sched.schedule import MAX_PREVIEW, preview
from schedd.web import queries
from schedd.web.figures import Rates
from schedd.web.gateway import Gateway
from schedd.web.sessions import COOKIE, Session, Sessions
from schedd.web.viewmodel import (
    STATUS_FILTERS,
    JobFilter,
    duration_text,
    error_text,
    instant_text,
    job_row,
    parse_instant,
    relative_text,
    run_row,
    schedule_text,
)

log = logging.getLogger("schedd.web")

__all__ = ["Dashboard", "create_app"]

PAGE_SIZE = 50
#: slots one backfill submission creates at most (the page says where to go on from)
BACKFILL_MAX = 10_000


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Dashboard:
    """What the routes share: the gateway to the cluster, the sessions, and (when the node
    records metrics) a callable returning its counter totals for the cluster view."""

    gateway: Gateway
    sessions: Sessions
    https: bool
    node_id: str = ""
    figures: Callable[[], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        self.rates = Rates()
        self.env = Environment(
            loader=PackageLoader("schedd.web", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


def _ns(request: Request) -> str:
    raw = request.query_params.get("ns", "")
    try:
        return namespaces.namespace(raw.strip())
    except errors.InvalidArgument:
        return namespaces.DEFAULT


def _url(path: str, ns: str, **params: Any) -> str:
    query = {k: v for k, v in params.items() if v not in ("", None)}
    if ns and ns != namespaces.DEFAULT:
        query["ns"] = ns
    return path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def create_app(dash: Dashboard) -> Starlette:
    """The ASGI application of one node's dashboard."""

    def session_of(request: Request) -> Session | None:
        return dash.sessions.get(request.cookies.get(COOKIE))

    def set_cookie(response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            session.sid,
            httponly=True,
            samesite="strict",
            secure=dash.https,
            path="/",
        )

    def render(
        request: Request,
        session: Session,
        template: str,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        ns = context.pop("ns", _ns(request))
        fragment = request.query_params.get("_fragment") == "1"
        html = dash.env.get_template(template).render(
            fragment=fragment,
            ns=ns,
            url=lambda path, **p: _url(path, ns, **p),
            q=_quote,
            csrf=session.csrf,
            rid=lambda: secrets.token_hex(8),
            flashes=[] if fragment else session.take_flashes(),
            needs_login=dash.gateway.needs_login,
            node_id=dash.node_id,
            path=request.url.path,
            now=instant_text(_now_ms()),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def page(
        handler: Callable[[Request, Session, Client], Any],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A GET view: the session (or sign-in), the user's client, the API's refusals shown."""

        async def endpoint(request: Request) -> Response:
            session = session_of(request)
            fresh = False
            if session is None:
                if dash.gateway.needs_login:
                    back = request.url.path + ("?" + request.url.query if request.url.query else "")
                    return RedirectResponse(_url("/login", "", next=back), status_code=303)
                session, fresh = dash.sessions.create(None), True
            try:
                client = dash.gateway.client(session.token, _ns(request))
                response = await run_in_threadpool(handler, request, session, client)
            except _Redirect as r:
                response = RedirectResponse(r.url, status_code=303)
            except errors.Unauthenticated as e:
                return _signed_out(session, e)
            except errors.SchedError as e:
                response = render(
                    request,
                    session,
                    "error.html",
                    status_code=_http_status(e),
                    message=error_text(e),
                )
            if fresh:
                set_cookie(response, session)
            return response

        return endpoint

    def action(
        handler: Callable[[Request, Session, Client, dict[str, list[str]]], str],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: CSRF checked, the API called as the user, a message, back to ``back``."""

        async def endpoint(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                return HTMLResponse("Not signed in: open /login", status_code=401)
            form = urllib.parse.parse_qs((await request.body()).decode(), keep_blank_values=True)
            if not session.csrf_ok(form.get("csrf", [""])[0]):
                return HTMLResponse(
                    "This form has expired (CSRF token mismatch): reload the page and try again.",
                    status_code=403,
                )
            back = form.get("back", ["/jobs"])[0]
            if not back.startswith("/") or back.startswith("//"):
                back = "/jobs"
            try:
                client = dash.gateway.client(session.token, _ns(request))
                done = await run_in_threadpool(handler, request, session, client, form)
                session.flash("ok", done)
            except errors.Unauthenticated as e:
                return _signed_out(session, e)
            except errors.SchedError as e:
                session.flash("error", error_text(e))
            return RedirectResponse(back, status_code=303)

        return endpoint

    def _signed_out(session: Session, e: errors.SchedError) -> Response:
        dash.sessions.drop(session.sid)
        dash.gateway.forget(session.token)
        if not dash.gateway.needs_login:
            return HTMLResponse(error_text(e), status_code=401)
        return RedirectResponse(
            _url("/login", "", error=f"{e.message}: sign in again"), status_code=303
        )

    # ---- sign-in ------------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        if not dash.gateway.needs_login:
            return RedirectResponse("/jobs", status_code=303)
        if request.method == "POST":
            form = urllib.parse.parse_qs((await request.body()).decode())
            token = form.get("token", [""])[0].strip()
            nxt = form.get("next", ["/jobs"])[0]
        else:
            token = request.query_params.get("token", "").strip()
            nxt = request.query_params.get("next", "/jobs")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/jobs"
        error = request.query_params.get("error", "")
        if token:
            why = await run_in_threadpool(dash.gateway.check_token, token)
            if not why:
                session = dash.sessions.create(token)
                # the one-time URL's token leaves the address bar: a redirect to a clean URL
                response = RedirectResponse(nxt, status_code=303)
                set_cookie(response, session)
                return response
            error = f"This token was refused: {why}"
        html = dash.env.get_template("login.html").render(
            error=error, next=nxt, node_id=dash.node_id, fragment=False, needs_login=True
        )
        return HTMLResponse(html, status_code=401 if token else 200)

    async def logout(request: Request) -> Response:
        session = session_of(request)
        form = urllib.parse.parse_qs((await request.body()).decode())
        if session is not None and session.csrf_ok(form.get("csrf", [""])[0]):
            dash.sessions.drop(session.sid)
            dash.gateway.forget(session.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(_url("/jobs", _ns(request)), status_code=303)

    # ---- jobs ---------------------------------------------------------------------------------

    def jobs(request: Request, session: Session, client: Client) -> Response:
        p = request.query_params
        filt = JobFilter.parse(p.get("status", ""), p.get("queue", ""), p.get("q", ""))
        after = p.get("after", "")
        got = queries.job_page(client, filt, after, PAGE_SIZE, _now_ms())
        return render(
            request,
            session,
            "jobs.html",
            page=got,
            filt=filt,
            after=after,
            statuses=STATUS_FILTERS,
            title="Jobs",
        )

    def bulk(request: Request, session: Session, client: Client, form: dict[str, list[str]]) -> str:
        what = form.get("action", [""])[0]
        names = [n for n in form.get("names", []) if n]
        if not names:
            raise errors.InvalidArgument("names", "select at least one job")
        rid = form.get("rid", [""])[0]
        done: list[str] = []
        for name in names:
            try:
                if what == "pause":
                    client.pause_job(name)
                elif what == "resume":
                    client.resume_job(name)
                elif what == "trigger":
                    client.trigger_job(name, request_id=f"{rid}:{name}" if rid else None)
                else:
                    raise errors.InvalidArgument(
                        "action", f"{what!r} is not pause, resume or trigger"
                    )
            except errors.SchedError as e:
                if done:
                    raise type(e)(
                        f"{what}: done for {', '.join(done)}; {name}: {e.message}"
                    ) from None
                raise
            done.append(name)
        return f"{what}: done for {len(done)} job(s): {', '.join(done)}"

    def job_detail(request: Request, session: Session, client: Client) -> Response:
        name = request.path_params["name"]
        job = client.get_job(name)
        now = _now_ms()
        tz = job.schedule.timezone or "UTC"
        runs = client.list_runs(job=name, limit=30)
        skips = [r for r in runs if r.state == RunState.SKIPPED]
        stored = namespaces.qualify(_ns(request), name)
        try:
            upcoming = preview(job.schedule.to_pb(), now, min(10, MAX_PREVIEW), name=stored)
        except errors.SchedError:
            upcoming = []
        explain = None
        explain_error = ""
        at_text = request.query_params.get("at", "")
        if at_text:
            try:
                at_ms = parse_instant(at_text, tz, now)
                explain = client.explain_job(name, at_ms)
            except errors.InvalidArgument as e:
                explain_error = error_text(e)
        return render(
            request,
            session,
            "job.html",
            title=f"Job {name}",
            job=job,
            row=job_row(job, runs, now),
            tz=tz,
            schedule=schedule_text(job.schedule),
            upcoming=[
                (instant_text(t, tz), instant_text(t), relative_text(t, now)) for t in upcoming
            ],
            runs=[run_row(r, now, tz) for r in reversed(runs) if r.state != RunState.SKIPPED],
            skips=[run_row(r, now, tz) for r in reversed(skips)],
            explain=explain,
            explain_error=explain_error,
            explain_runs=[run_row(r, now, tz) for r in explain.runs] if explain else [],
            explain_slot=instant_text(explain.slot_ms, tz) if explain else "",
            at_text=at_text,
            instant=instant_text,
            duration=duration_text,
        )

    def job_action(
        request: Request, session: Session, client: Client, form: dict[str, list[str]]
    ) -> str:
        name = request.path_params["name"]
        what = request.path_params["action"]
        if what == "pause":
            client.pause_job(name)
            return f"job {name} paused"
        if what == "resume":
            client.resume_job(name, skip_missed=form.get("skip_missed", [""])[0] == "1")
            return f"job {name} resumed"
        if what == "trigger":
            rid = form.get("rid", [""])[0] or None
            run = client.trigger_job(name, request_id=rid)
            return f"job {name} triggered: run {run.run_id} ({run.state.word})"
        if what == "backfill":
            job = client.get_job(name)
            tz = job.schedule.timezone or "UTC"
            now = _now_ms()
            start = parse_instant(form.get("from", [""])[0] or "-1h", tz, now)
            end = parse_instant(form.get("to", [""])[0] or "now", tz, now)
            created = existing = 0
            for result in client.backfill(name, start, end):
                created += result.created
                existing += result.existing
                if not result.done and created + existing >= BACKFILL_MAX:
                    return (
                        f"backfill of {name}: {created} runs created, {existing} slots had one; "
                        f"stopped after {BACKFILL_MAX} slots: go on from "
                        f"{instant_text(result.next_from_ms, tz)}"
                    )
            return (
                f"backfill of {name} from {instant_text(start, tz)} to {instant_text(end, tz)}: "
                f"{created} runs created, {existing} slots had one already"
            )
        raise errors.InvalidArgument(
            "action", f"{what!r} is not pause, resume, trigger or backfill"
        )

    # ---- runs ---------------------------------------------------------------------------------

    def runs(request: Request, session: Session, client: Client) -> Response:
        job = request.query_params.get("job", "")
        now = _now_ms()
        leased = client.list_runs(job=job, limit=200, state=RunState.LEASED)
        dead = client.list_runs(job=job, limit=200, state=RunState.DEAD)
        recent = client.list_runs(job=job, limit=50)
        return render(
            request,
            session,
            "runs.html",
            title="Runs",
            job=job,
            running=[run_row(r, now) for r in reversed(leased)],
            dead=[run_row(r, now) for r in reversed(dead)],
            recent=[run_row(r, now) for r in reversed(recent)],
        )

    def run_detail(request: Request, session: Session, client: Client) -> Response:
        run = client.get_run(request.path_params["run_id"])
        now = _now_ms()
        return render(
            request, session, "run.html", title=f"Run {run.run_id}", run=run, row=run_row(run, now)
        )

    def run_action(
        request: Request, session: Session, client: Client, form: dict[str, list[str]]
    ) -> str:
        run_id = request.path_params["run_id"]
        what = request.path_params["action"]
        rid = form.get("rid", [""])[0] or None
        if what == "retry":
            run = client.retry_run(run_id, request_id=rid)
            return f"run {run_id} retried: {run.state.word}, attempt {run.attempt + 1} next"
        if what == "cancel":
            run = client.cancel_run(
                run_id,
                reason=form.get("reason", [""])[0] or "cancelled from the dashboard",
                request_id=rid,
            )
            return f"run {run_id} cancelled"
        raise errors.InvalidArgument("action", f"{what!r} is not retry or cancel")

    # ---- workers and cluster ------------------------------------------------------------------

    def workers(request: Request, session: Session, client: Client) -> Response:
        now = _now_ms()
        listed = client.list_workers()
        rows = [
            {
                "w": w,
                "connected": relative_text(w.connected_ms, now),
                "seen": relative_text(w.last_seen_ms, now),
            }
            for w in listed
        ]
        return render(request, session, "workers.html", title="Workers", workers=rows)

    def cluster(request: Request, session: Session, client: Client) -> Response:
        reports = client.cluster_status()
        try:
            members = client.list_members()
            members_error = ""
        except errors.SchedError as e:
            members, members_error = [], error_text(e)
        figures: dict[str, str] = {}
        if dash.figures is not None:
            dash.rates.add(time.monotonic(), dash.figures())
            rate = dash.rates.per_second("runs_created")
            dead = dash.rates.per_second("finished_dead")
            lag = dash.rates.mean("fire_commit_lag_sum", "fire_commit_lag_count")
            window = dash.rates.seconds
            figures = {
                "window": f"{window:.0f}s" if window else "",
                "firing_rate": f"{rate:.2f}/s" if rate is not None else "measuring...",
                "dead_rate": f"{dead:.2f}/s" if dead is not None else "measuring...",
                "lag": (f"{lag * 1000:.0f} ms" if lag is not None else "no firing in the window"),
            }
        leader = next((r.status for r in reports if r.status and r.status.is_leader), None)
        return render(
            request,
            session,
            "cluster.html",
            title="Cluster",
            reports=reports,
            members=members,
            members_error=members_error,
            leader=leader,
            figures=figures,
            metrics_on=dash.figures is not None,
        )

    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/jobs", page(jobs)),
        Route("/jobs/bulk", action(bulk), methods=["POST"]),
        Route("/jobs/{name}", page(job_detail)),
        Route("/jobs/{name}/{action}", action(job_action), methods=["POST"]),
        Route("/runs", page(runs)),
        Route("/runs/{run_id}", page(run_detail)),
        Route("/runs/{run_id}/{action}", action(run_action), methods=["POST"]),
        Route("/workers", page(workers)),
        Route("/cluster", page(cluster)),
        Mount("/static", app=StaticFiles(packages=[("schedd.web", "static")]), name="static"),
    ]

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("event=dashboard_error path=%s", request.url.path, exc_info=exc)
        return HTMLResponse(
            "Internal error in the dashboard; the node's log has the details.", status_code=500
        )

    async def security_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return Starlette(
        routes=routes,
        exception_handlers={Exception: internal_error},
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=security_headers)],
    )


def _http_status(e: errors.SchedError) -> int:
    return {
        "NOT_FOUND": 404,
        "PERMISSION_DENIED": 403,
        "INVALID_ARGUMENT": 400,
        "UNAVAILABLE": 503,
        "RESOURCE_EXHAUSTED": 429,
    }.get(e.code, 500 if e.code == "INTERNAL" else 409)
