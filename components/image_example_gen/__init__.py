"""components/image_example_gen."""
