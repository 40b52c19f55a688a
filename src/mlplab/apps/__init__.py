"""The console scripts, one thin module each (``train``, ``search``, ``runs``, ``perceptron``, ``gd``), and the
Hydra-app helper they all run through (``hydra_app``)."""
