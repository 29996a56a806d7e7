"""A trained model at work: loading it with its params, prediction, Grad-CAM, TFLite, reports."""
