"""A latency-bandwidth model of one gradient exchange for data-parallel training:
ring allreduce (what dist_sync does with MPI) against a parameter server (MXNet's
ps-lite), for ResNet-50's 25.6M float32 parameters. Prints the table quoted in
docs/distributed.md. Usage: scaling_model.py [--params N] [--step-seconds T]

  ring allreduce:   2 (N-1) alpha + 2 (N-1)/N * S / B
  parameter server: every worker pushes S and pulls S through its own link; with
                    P servers sharing the keys a server handles N S / P each way:
                    2 alpha + 2 max(S, N S / P) / B
A step's compute time T is overlapped with nothing (the worst case), so the
scaling efficiency is T / (T + exchange)."""
import argparse


def ring(n, size, bw, alpha):
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * size / bw


def ps(n, size, bw, alpha, servers):
    return 2 * alpha + 2 * max(size, n * size / servers) / bw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=float, default=25.557e6, help="parameters (ResNet-50: 25,557,032)")
    ap.add_argument("--step-seconds", type=float, default=0.3, help="compute time of one step on one worker")
    a = ap.parse_args()
    size = a.params * 4
    links = [("10 GbE, TCP", 1.25e9, 50e-6), ("100 Gb InfiniBand", 12.5e9, 3e-6)]
    print("ResNet-50: %.1f MB of float32 gradients per step; step compute %.2f s" % (size / 1e6, a.step_seconds))
    print("%-18s %7s %10s %10s %10s %9s %9s" % ("link", "workers", "ring_s", "ps_N_s", "ps_1_s", "eff_ring", "eff_ps_1"))
    for name, bw, alpha in links:
        for n in (2, 8, 16, 32, 64, 128, 256):
            r, p, p1 = ring(n, size, bw, alpha), ps(n, size, bw, alpha, n), ps(n, size, bw, alpha, 1)
            print("%-18s %7d %10.4f %10.4f %10.4f %8.1f%% %8.1f%%" % (
                name, n, r, p, p1, 100 * a.step_seconds / (a.step_seconds + r),
                100 * a.step_seconds / (a.step_seconds + p1)))


if __name__ == "__main__":
    main()
