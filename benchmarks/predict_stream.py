"""Streaming `pram predict`: peak memory and sentences/s on a 100 MB raw-text file against a 1 MB one.

    python benchmarks/predict_stream.py [CHECKPOINT] [--megabytes 1,100] [--threads 2]

The files are real sentences (CoNLL-2003 German train, one sentence per line, repeated to the size) written
to a temporary folder. Each size is tagged by `pram predict --out` in a process of its own, which reports its own
peak resident memory (getrusage). Without CHECKPOINT a smoke checkpoint (the tiny random 2-layer BERT) is
trained first: the claim measured is that memory does not grow with the input, which does not depend on the
encoder's size; with me5-small, 100 MB (1.4 million sentences) would take hours on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import table, write_section

RUN = """
import json, resource, sys, time
from pram.predict import predict_command
started = time.perf_counter()
predict_command(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", default=None)
    parser.add_argument("--megabytes", default="1,100")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sizes = [float(x) for x in args.megabytes.split(",")]

    from pram.config import preset
    from pram.data.corpora import resolve_data_dir
    from pram.data.readers import read_file
    from pram.logs import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from pram.train import train

            train(preset("smoke", out_dir=str(tmp / "run"), quiet=True, eval_languages=()))
            checkpoint = str(tmp / "run" / "checkpoints" / "best-target-dev")
        german = read_file(resolve_data_dir(None) / "conll2003" / "de" / "train.txt")
        block = "".join(" ".join(s.tokens) + "\n" for s in german).encode("utf-8")
        rows, measured = [], {}
        for mb in sizes:
            given = tmp / f"input-{mb:g}mb.txt"
            want = int(mb * 1e6)
            with given.open("wb") as f:
                written = 0
                while written < want:
                    part = block[: want - written]
                    part = part[: part.rfind(b"\n") + 1] or part
                    f.write(part)
                    written += len(part)
            sentences = given.read_bytes().count(b"\n")
            done = subprocess.run([sys.executable, "-c", RUN, checkpoint, str(given), str(tmp / "out.tsv")],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            result = json.loads(done.stdout.strip().splitlines()[-1])
            measured[mb] = result
            rows.append([f"{mb:g} MB", f"{sentences:,}", f"{result['seconds']:.1f}",
                         f"{sentences / result['seconds']:,.0f}", f"{result['peak_mib']:.0f}"])
            print(rows[-1], flush=True)
            given.unlink()
    body = table(["input", "sentences", "seconds", "sentences/s", "peak RSS (MiB)"], rows)
    small, large = measured[min(sizes)], measured[max(sizes)]
    model = "a smoke checkpoint (the tiny random 2-layer BERT)" if args.checkpoint is None else args.checkpoint
    body += (f"\n\nCheckpoint: {model}. "
             f"Peak resident memory on {max(sizes):g} MB is **{large['peak_mib'] / small['peak_mib']:.2f}x** that on "
             f"{min(sizes):g} MB (target: within 1.5x): `pram predict` reads, tags and writes 2,048 sentences at a "
             f"time, so memory is the model's and one chunk's, whatever the file's size.")
    write_section("predict-stream", "Streaming prediction: a 100 MB text file against a 1 MB one", body, args.threads)


if __name__ == "__main__":
    main()
