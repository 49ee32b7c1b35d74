"""Paper 04 (DGA): the compared methods, their labels, the paper's published numbers and the
fixed choices of our reproduction (:mod:`attrlab.experiments.reproduce.dga`)."""

from __future__ import annotations

METHODS = ("gxi", "gbp", "ig", "fullgrad", "guided_ig", "dga")
METRIC_LABELS = {"morf": "MoRF", "lerf": "LeRF"}
LABELS = {"gxi": "G*I", "gbp": "GBP", "ig": "IG", "fullgrad": "FG", "guided_ig": "GIG",
          "dga": "DGA", "random": "random", "baseline": "no removal"}
FIGURE2_METHODS = ("fullgrad", "ig", "dga")
Q_VALUES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAR_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
ROAR_MODEL = "cifar10_resnet8"
TABLE2_MODELS = ("cifar10_resnet8",)   # our counterpart of the paper's ResNet-18
ROAR_TRAIN = 5000     # training images of each ROAR retraining (paper: all 50k)
ROAR_EPOCHS = 5       # epochs of each ROAR retraining (paper: 100)
NOISE_SIGMA = 0.02    # Figure 2: std of the Gaussian noise in [0, 1] pixel units (~5/255)
DGA_N, DGA_Q = 30, 0.9

# The paper's model that each of our checkpoints stands in for, and how they differ.
PAPER_MODEL = {"cifar10_resnet8": "ResNet-18", "cifar10_nib_vgg16": "VGG-16"}
MODEL_NOTES = {
    "cifar10_resnet8": "ResNet8 (width 32) on CIFAR-10, 32x32 inputs; stands in for the "
                       "paper's ImageNet ResNet-18 (224x224).",
    "cifar10_nib_vgg16": "VGG16 at width 0.25 on CIFAR-10 without any bias (NIB: no layer "
                         "biases, bias-free BatchNorm); stands in for the paper's ImageNet "
                         "VGG-16. Without biases FG's bias-gradient terms vanish (FG = the "
                         "normalised |G*I|), DGA's local UFG map equals G*I and IG from the "
                         "zero baseline equals G*I on this positively homogeneous network.",
    "mnist_cnn": "small CNN on MNIST (28x28, one channel); the paper has no counterpart "
                 "(its third model is an ImageNet Inception-v3).",
}

# Paper 04, Table 1 (ImageNet validation set, 50k images): AUC of the pixel perturbation
# curves, columns G*I, GBP, IG, FG, GIG, DGA. LeRF: higher is better; MoRF: lower is better.
PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "lerf": {"VGG-16": dict(zip(METHODS, (0.078, 0.113, 0.096, 0.415, 0.110, 0.434))),
             "ResNet-18": dict(zip(METHODS, (0.114, 0.145, 0.158, 0.448, 0.185, 0.533))),
             "Inception-V3": dict(zip(METHODS, (0.171, 0.162, 0.243, 0.558, 0.255, 0.691)))},
    "morf": {"VGG-16": dict(zip(METHODS, (0.045, 0.094, 0.036, 0.110, 0.029, 0.023))),
             "ResNet-18": dict(zip(METHODS, (0.050, 0.124, 0.038, 0.131, 0.029, 0.019))),
             "Inception-V3": dict(zip(METHODS, (0.105, 0.145, 0.066, 0.175, 0.061, 0.041)))},
}
# Paper 04, Table 2 (ResNet-18, ImageNet): Sensitivity-n correlation at q = 10, 20, ..., 90 %
# (the table's caption did not survive in our copy; section 4.2 describes it).
PAPER_TABLE2: dict[str, tuple[float, ...]] = {
    "gxi": (-0.006, -0.009, -0.009, -0.013, -0.007, -0.014, -0.016, -0.022, -0.037),
    "gbp": (0.022, 0.032, 0.025, 0.024, 0.022, 0.027, 0.024, 0.024, 0.020),
    "ig": (0.013, 0.022, 0.020, 0.027, 0.032, 0.037, 0.039, 0.047, 0.067),
    "guided_ig": (0.006, 0.007, 0.004, 0.002, 0.003, 0.002, 0.002, 0.002, -0.001),
    "fullgrad": (-0.045, -0.017, -0.005, 0.001, 0.003, 0.003, 0.008, 0.008, 0.004),
    "dga": (0.095, 0.096, 0.101, 0.098, 0.095, 0.089, 0.083, 0.080, 0.079),
}
# Paper 04, Figure 5 is a plot without numbers; section 4.3 states its conclusion.
PAPER_FIGURE5_TEXT = ("paper (section 4.3, Figure 5; simple CNN with 6 conv + 3 linear layers, "
                      "50k training images, Adam lr 3e-4, 100 epochs, 10 trials): \"the model "
                      "trained on the modified dataset with DGA steeply decreases the test "
                      "accuracy even with 10% removed\"; lower accuracy is better.")


__all__ = [
    "DGA_N",
    "DGA_Q",
    "FIGURE2_METHODS",
    "LABELS",
    "METHODS",
    "METRIC_LABELS",
    "MODEL_NOTES",
    "NOISE_SIGMA",
    "PAPER_FIGURE5_TEXT",
    "PAPER_MODEL",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "Q_VALUES",
    "ROAR_EPOCHS",
    "ROAR_FRACTIONS",
    "ROAR_MODEL",
    "ROAR_TRAIN",
    "TABLE2_MODELS",
]
