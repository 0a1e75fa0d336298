"""Python side of the moe compiler: the float64 reference oracle and the
example layer configurations."""
