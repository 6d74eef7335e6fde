"""Training input: the dataset over ``train.rec`` with its train/validation split and reproducible loader
(:mod:`.datasets`), and the AdaFace augmentations (:mod:`.augment`)."""
