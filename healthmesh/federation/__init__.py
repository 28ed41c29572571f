"""Federation on Flower."""
