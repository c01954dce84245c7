"""components/gan_evaluator."""
