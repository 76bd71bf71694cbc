"""Training side: synthetic corpus generation, augmentation and model training on top of audiomodels."""
