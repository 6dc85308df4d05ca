"""Build hook: generate the protobuf/gRPC modules from proto/ into the built package.

Generated code is never committed. A source checkout (editable install) generates it on first
import instead, see schedd/_protogen.py.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class BuildWithProtos(build_py):
    def run(self) -> None:
        super().run()
        from schedd._protogen import generate

        root = os.path.dirname(os.path.abspath(__file__))
        generate(os.path.join(root, "proto"), self.build_lib)


setup(cmdclass={"build_py": BuildWithProtos})
