"""The paper's DFAD loop in PyTorch, as an independent speed reference (CPU, float32).

The models and the loop follow the paper's reference code (Fang et al., DFAD):
LeNet-5 / LeNet-5-Half, ResNet-34-8x / ResNet-18-8x and Generator-A in NCHW,
and per iteration 5 imitation steps (fresh noise, detached generator output,
L1 between student and teacher logits, SGD step) and one generation step (the
negated L1, backpropagated through teacher and student into the generator,
Adam step). As in that code, student and generator run in training mode and
the generation step's backward pass also fills the student's weight gradients;
the teacher is frozen (eval mode, no weight gradients).

Run by `dfad_speed.py` as a worker in its own virtual environment, which needs
only torch (see benchmarks/README.md):

    /work/torchvenv/bin/python benchmarks/torch_reference.py --model=lenet5 --batch_size=128

It warms up, then serves `worker_protocol` ("run N" times N iterations).
"""

import argparse

import torch
from torch import nn
from torch.nn import functional as F

from worker_protocol import serve


class LeNet5(nn.Module):
    """LeNet-5 (paper Table 5); `width=0.5` gives LeNet-5-Half."""

    def __init__(self, channels=1, num_classes=10, width=1.0):
        super().__init__()
        c1, c2, c3, f1 = (max(1, round(f * width)) for f in (6, 16, 120, 84))
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 5), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(c3, f1), nn.ReLU(), nn.Linear(f1, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet8x(nn.Module):
    """ResNet with basic blocks and 8x downsampling (paper Table 6)."""

    def __init__(self, blocks, channels=3, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, cin = [], 64
        for stage, count in enumerate(blocks):
            cout = 64 * 2**stage
            for block in range(count):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class GeneratorA(nn.Module):
    """Generator-A (paper Table 4), as in the paper's code."""

    def __init__(self, latent_dim=256, width=64, channels=1, image_size=32):
        super().__init__()
        self.init_size = image_size // 4
        self.width = width
        self.project = nn.Linear(latent_dim, 2 * width * self.init_size**2)
        self.bn0 = nn.BatchNorm2d(2 * width)
        self.block1 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, 1, 1), nn.BatchNorm2d(2 * width),
                                    nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2),
                                    nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh(),
                                    nn.BatchNorm2d(channels, affine=False))

    def forward(self, z):
        x = self.project(z).view(z.shape[0], 2 * self.width, self.init_size, self.init_size)
        x = F.interpolate(self.bn0(x), scale_factor=2)
        x = F.interpolate(self.block1(x), scale_factor=2)
        return self.block2(x)


def build(model, channels, generator_width, latent_dim):
    """Teacher, student and generator of a configuration ("lenet5" or "resnet")."""
    if model == "lenet5":
        teacher, student = LeNet5(channels), LeNet5(channels, width=0.5)
    else:
        teacher, student = ResNet8x((3, 4, 6, 3), channels), ResNet8x((2, 2, 2, 2), channels)
    return teacher, student, GeneratorA(latent_dim, generator_width, channels)


class Loop:
    """The paper's DFAD iteration: k imitation steps, then one generation step."""

    def __init__(self, teacher, student, generator, batch_size, latent_dim, imitation_steps=5):
        self.teacher, self.student, self.generator = teacher.eval(), student.train(), generator.train()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self.optimizer_s = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
        self.optimizer_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
        self.batch_size, self.latent_dim, self.imitation_steps = batch_size, latent_dim, imitation_steps

    def iteration(self):
        for _ in range(self.imitation_steps):
            z = torch.randn(self.batch_size, self.latent_dim)
            self.optimizer_s.zero_grad()
            fake = self.generator(z).detach()
            t_logit = self.teacher(fake)
            s_logit = self.student(fake)
            loss_s = F.l1_loss(s_logit, t_logit.detach())
            loss_s.backward()
            self.optimizer_s.step()
        z = torch.randn(self.batch_size, self.latent_dim)
        self.optimizer_g.zero_grad()
        fake = self.generator(z)
        loss_g = -F.l1_loss(self.student(fake), self.teacher(fake))
        loss_g.backward()
        self.optimizer_g.step()
        return loss_s.item(), loss_g.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lenet5", "resnet"], default="lenet5")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--generator_width", type=int, default=64)
    parser.add_argument("--latent_dim", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    loop = Loop(*build(args.model, args.channels, args.generator_width, args.latent_dim),
                args.batch_size, args.latent_dim)

    def run(count):
        for _ in range(count):
            loop.iteration()

    run(args.warmup)
    serve(run)


if __name__ == "__main__":
    main()
