"""Where Hydra finds mlplab's population launcher: Hydra instantiates only plugin classes defined in the
hydra_plugins namespace, so the class is declared here; its workings are ``mlplab.apps.launcher``."""

from mlplab.apps import launcher


class PopulationLauncher(launcher.PopulationLauncher):
    """``hydra/launcher=population`` (conf/hydra/launcher/population.yaml)."""
