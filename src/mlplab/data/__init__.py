"""MNIST and Fashion-MNIST: IDX files found and checked (``idx``), loaded as whole tensors and split
(``splits``), mini-batches as slices of a permutation (``batches``), random per-epoch variants (``augment``)."""
