"""The course's small algorithms: the perceptron, and gradient descent on a function of one variable."""
