"""Ships the recipes, trainer presets, sweeps and callback presets inside the package.

They live at the repository root (``recipes/``, ``configs/``, ``sweeps/``, ``callbacks/``), outside
``moco_lit/``; a built wheel carries copies under ``moco_lit/shipped/``, where ``moco_lit.shipped``
finds them by path or by name. An editable install reads them from the checkout instead. Everything else is in
pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("recipes", "configs", "sweeps", "callbacks")


class BuildPyWithShipped(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "moco_lit" / "shipped"
        for folder in SHIPPED:
            for path in sorted((ROOT / folder).rglob("*.y*ml")):
                if path.suffix not in (".yaml", ".yml"):
                    continue
                copy = target / folder / path.relative_to(ROOT / folder)
                self.mkpath(str(copy.parent))
                self.copy_file(str(path), str(copy))


setup(cmdclass={"build_py": BuildPyWithShipped})
