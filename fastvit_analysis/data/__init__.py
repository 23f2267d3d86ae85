"""Data: CIFAR-10/100 and ImageFolder from disk, CIFAR-C corruptions, the embedded synthetic data set."""
