"""How hard is the procedural offline Fashion set? A small CNN's test accuracy and confusion matrix.

    python bench/offline_classifier.py [--epochs 3] [--seed 0]

Draws the 60,000 / 10,000 split with `draw_fashion` (the pixels `load_offline_fashion` caches), trains a 2-conv CNN
with random horizontal flips on the CPU, and prints the test accuracy after every epoch and the confusion matrix.
The offline set is meant to be learnable but not trivial: roughly 93-99 %, with errors between T-shirt/top, Pullover,
Coat and Shirt, as on the real Fashion-MNIST.
"""
import sys, time

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.data import FASHION_CLASSES, OFFLINE_SIZES
from course_lib.garments import draw_fashion
from common import bench_parser


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = (draw_fashion(n, seed=(args.seed, i))
                                            for i, n in enumerate(OFFLINE_SIZES.values()))
    x_train, x_test = (x.float().div(255).unsqueeze(1) for x in (x_train, x_test))
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(x_train)).split(256):
            x = x_train[idx]
            x = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, x.flip(-1), x)
            loss = F.cross_entropy(net(x), y_train[idx]); opt.zero_grad(); loss.backward(); opt.step()
        net.eval()
        with torch.no_grad(): pred = torch.cat([net(x).argmax(1) for x in x_test.split(1000)])
        print(f"epoch {epoch + 1}: test accuracy {(pred == y_test).float().mean():.2%}  "
              f"({time.perf_counter() - start:.0f} s)")
    confusion = torch.zeros(10, 10, dtype=torch.long).index_put_((y_test, pred), torch.tensor(1), accumulate=True)
    print("confusion (rows: true class, columns: predicted)")
    for name, row in zip(FASHION_CLASSES, confusion.tolist()): print(f"{name:>12s} " + " ".join(f"{v:5d}" for v in row))


if __name__ == "__main__":
    sys.exit(main())
