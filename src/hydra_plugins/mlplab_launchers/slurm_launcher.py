"""Where Hydra finds mlplab's SLURM launcher (Hydra instantiates only plugin classes defined in the
hydra_plugins namespace); its workings are ``mlplab.apps.slurm_launcher``."""

from mlplab.apps import slurm_launcher


class SlurmLauncher(slurm_launcher.SlurmLauncher):
    """``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml)."""
