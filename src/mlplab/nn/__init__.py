"""The network of the slides: activations, costs, the MLP, initialisers, weight penalties, backpropagation."""
