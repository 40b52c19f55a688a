"""Figures: the two every training run records (``run``, Pillow), the matplotlib helpers (``mpl``), a
study's (``study``), and the course apps' (``course``)."""
