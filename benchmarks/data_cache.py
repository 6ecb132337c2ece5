"""Data: first load and tokenisation of CoNLL-2003 English train against the cached load.

    python benchmarks/data_cache.py [--repeats 3]

Each load runs in a fresh process (the tokenizer loaded first and timed apart) with an empty cache folder for the
first and the filled one after: reading the
original file (parsing, IOB1 to BIO, Arrow) and tokenising it, then the same calls served from the Arrow cache
and from `datasets`' cache of the tokenised split. Reports the median seconds of each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

from common import table, write_section


def one(cache_dir: str, encoder: str) -> dict:
    started = time.perf_counter()
    from pram.batches import encode_dataset
    from pram.data.corpora import load_language
    from pram.encoder import load_tokenizer, resolve_encoder
    from pram.logs import quiet_libraries

    quiet_libraries()
    imported = time.perf_counter()
    tokenizer = load_tokenizer(resolve_encoder(encoder))  # the same fixed cost either way: timed apart
    tokenizer_ready = time.perf_counter()
    train = load_language("conll", "en", cache_dir=cache_dir)["train"]
    loaded = time.perf_counter()
    encoded = encode_dataset(train, tokenizer, 128, labelled=True)
    done = time.perf_counter()
    return {"sentences": len(encoded), "import_s": imported - started, "tokenizer_s": tokenizer_ready - imported,
            "load_s": loaded - tokenizer_ready, "tokenise_s": done - loaded, "total_s": done - tokenizer_ready}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="first/cached pairs, each with a new cache folder")
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.encoder)))
        return
    runs = {"first": [], "cached": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            for kind in ("first", "cached"):
                done = subprocess.run([sys.executable, __file__, "--one", cache, "--encoder", args.encoder],
                                      capture_output=True, text=True, check=True)
                runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(kind, runs[kind][-1], flush=True)
    med = {kind: {k: statistics.median(r[k] for r in rs) for k in ("tokenizer_s", "load_s", "tokenise_s", "total_s")}
           for kind, rs in runs.items()}
    rows = [[kind, f"{m['load_s']:.2f}", f"{m['tokenise_s']:.2f}", f"{m['total_s']:.2f}", f"{m['tokenizer_s']:.2f}"]
            for kind, m in med.items()]
    body = table(["load", "read the file (s)", "tokenise (s)", "total (s)", "loading the tokenizer, apart (s)"], rows)
    ratio = med["cached"]["total_s"] / med["first"]["total_s"]
    body += (f"\n\n{runs['first'][0]['sentences']} sentences, median of {args.repeats} fresh processes each (Python "
             f"imports not counted). The cached load takes **{ratio:.3f}** of the first (target: at most 0.1). Loading "
             f"the encoder's tokenizer is the same either way and timed apart: most of it is transformers building "
             f"its XLM-R tokenizer class around `tokenizer.json` (the `tokenizers` file alone loads in about 0.6 s).")
    write_section("data-cache", "Data: first load and tokenisation against the cached load", body)


if __name__ == "__main__":
    main()
