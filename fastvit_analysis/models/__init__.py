"""AlterNet and CIFAR model configurations, registered with timm's model registry."""
