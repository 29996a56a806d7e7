"""Model building blocks: backbones, pretrained-weight conversion (Keras only, no torch)."""
