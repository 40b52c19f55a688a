"""The configs travel with the package: a built wheel carries conf/ as mlplab/conf, so that an installed mlplab
composes its runs anywhere, while conf/ stays the project's top-level config folder (an editable install and
a source checkout read it in place: mlplab/paths.py). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildWithConfigs(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "mlplab" / "conf"
            shutil.rmtree(target, ignore_errors=True)
            # a user's own search_*.yaml (written by mlplab-search, git-ignored) stays out of the wheel
            shutil.copytree(CONF, target, ignore=shutil.ignore_patterns("search_*.yaml", "__pycache__"))


setup(cmdclass={"build_py": BuildWithConfigs})
