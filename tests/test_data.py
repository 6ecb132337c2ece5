"""The data layer on the real corpora of ../shared/data: counts, reading rules, bad input, cache, labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pram.data.check import data_check_command, file_counts
from pram.data.corpora import (
    LABELS,
    available_languages,
    language_dir,
    load_language,
    resolve_data_dir,
    split_files,
)
from pram.data.labels import restrict_tags, shared_label_set
from pram.data.readers import count_entities, read_file, repair_bio
from pram.errors import UserError

REPO = Path(__file__).resolve().parents[1]

# (sentences, tokens, entities) of every split. Sentences and entities are the official counts of the data
# README; tokens (token lines without -DOCSTART-) and the extra pools were counted independently with awk.
COUNTS = {
    "conll2003/en": {"train": (14041, 203621, 23499), "dev": (3250, 51362, 5942),
                     "test": (3453, 46435, 5648)},
    "conll2003/de": {"train": (12152, 206931, 11851), "dev": (2867, 51444, 4833),
                     "test": (3005, 51943, 3673)},
    "conll2002/es": {"train": (8323, 264715, 18798), "dev": (1915, 52923, 4352),
                     "test": (1517, 51533, 3559)},
    "conll2002/nl": {"train": (15806, 202644, 13344), "dev": (2895, 37687, 2616),
                     "test": (5195, 68875, 3941)},
    "wikiann/en": {"train": (20000, 160394, 27931), "dev": (10000, 80536, 14146),
                   "test": (10000, 80326, 13958)},
    "wikiann/ar": {"train": (20000, 129184, 22501), "dev": (10000, 64291, 11267),
                   "test": (10000, 64347, 11259), "extra": (84824, 547961, 95337)},
    "wikiann/hi": {"train": (5000, 29443, 6124), "dev": (1000, 5808, 1226), "test": (1000, 6005, 1228),
                   "extra": (1853, 10765, 2297)},
    "wikiann/zh": {"train": (20000, 420054, 25031), "dev": (10000, 213682, 12493),
                   "test": (10000, 207505, 12532)},
}


@pytest.mark.parametrize("folder", sorted(COUNTS))
def test_counts_of_every_split_equal_the_official_ones(data_dir, folder):
    files = split_files(data_dir / folder)
    assert sorted(files) == sorted(COUNTS[folder])
    for split, path in files.items():
        counts = file_counts(path)
        found = (counts["sentences"], counts["tokens"], counts["entities"])
        assert found == COUNTS[folder][split], (folder, split)


def test_data_check_json_prints_the_official_counts(data_dir, capsys):
    assert data_check_command(str(data_dir / "conll2003" / "en"), as_json=True) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {split: dict(zip(("sentences", "tokens", "entities"), counts))
                       for split, counts in COUNTS["conll2003/en"].items()}
    assert data_check_command(str(data_dir / "wikiann" / "hi" / "extra.tsv"), as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"sentences": 1853, "tokens": 10765, "entities": 2297}


def test_data_check_table(data_dir, capsys):
    assert data_check_command(str(data_dir / "wikiann" / "hi"), as_json=False) == 0
    table = capsys.readouterr().out
    assert "extra" in table and "5,000" in table and "29,443" in table and "6,124" in table


def _sentence_at(sentences, line):
    return next(s for s in sentences if s.line <= line < s.line + len(s.tokens))


def test_iob1_is_repaired_on_conll2003_en_dev(data_dir):
    sentences = read_file(data_dir / "conll2003" / "en" / "dev.txt")
    # dev.txt:28746-28750 is `flick-on O / by O / Brazilian-born I-MISC / Spanish B-MISC / international O`
    sentence = _sentence_at(sentences, 28748)
    i = 28748 - sentence.line
    assert sentence.tokens[i - 1:i + 3] == ("by", "Brazilian-born", "Spanish", "international")
    assert sentence.tags[i - 1:i + 3] == ("O", "B-MISC", "B-MISC", "O")
    first = sentences[0]  # line 3: CRICKET - LEICESTERSHIRE(I-ORG) TAKE OVER ...
    assert first.line == 3 and first.tokens[2] == "LEICESTERSHIRE"
    assert first.tags[:4] == ("O", "O", "B-ORG", "O")
    assert not any(tag.startswith("I-") and (i == 0 or s.tags[i - 1][2:] != tag[2:])
                   for s in sentences for i, tag in enumerate(s.tags))


def test_repair_bio_and_count_entities():
    assert repair_bio(["I-PER", "I-PER", "I-LOC", "O", "I-ORG", "B-ORG", "I-ORG"]) == \
        ["B-PER", "I-PER", "B-LOC", "O", "B-ORG", "B-ORG", "I-ORG"]
    assert count_entities(["I-PER", "I-PER", "I-LOC", "O", "I-ORG", "B-ORG", "I-ORG"]) == 4
    assert count_entities(["O", "O"]) == 0


def test_german_dev_is_read_as_iso_8859_1(data_dir):
    sentences = read_file(data_dir / "conll2003" / "de" / "dev.txt")
    assert sentences[0].line == 3 and sentences[0].tokens[0] == "Großer"
    assert _sentence_at(sentences, 41).tokens[41 - _sentence_at(sentences, 41).line] == "können"
    assert read_file(data_dir / "conll2003" / "de" / "train.txt")  # the UTF-8 training file reads too


def test_wikiann_prefixes_are_stripped_and_chinese_is_kept(data_dir):
    first = read_file(data_dir / "wikiann" / "en" / "dev.tsv")[0]
    assert first.tokens == ("Sioux", "Falls", "Arena", "(", "Sioux", "Falls", ",", "South", "Dakota", ")")
    assert first.tags == ("B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC", "O")
    zh = read_file(data_dir / "wikiann" / "zh" / "dev.tsv")
    assert "".join(zh[0].tokens) == "前鎮區" and zh[0].tags == ("B-LOC", "I-LOC", "I-LOC")
    # dev.tsv:48-: `#` O, 機動戰士V B-ORG I-ORG..., `#` O, then a stray I-ORG on `G` (line 55): GUNDAM
    gundam = _sentence_at(zh, 55)
    assert gundam.line == 48 and "".join(gundam.tokens) == "#機動戰士V#GUNDAM（凱特・布希）"
    assert gundam.tags[5:10] == ("I-ORG", "O", "B-ORG", "I-ORG", "I-ORG")


def test_dutch_docstarts_without_blank_line(data_dir):
    sentences = read_file(data_dir / "conll2002" / "nl" / "train.txt")
    assert sentences[0].line == 2 and sentences[0].tokens[:3] == ("De", "tekst", "van")
    assert not any("-DOCSTART-" in s.tokens for s in sentences)


def test_spanish_stray_i_start_is_repaired(data_dir):
    sentence = _sentence_at(read_file(data_dir / "conll2002" / "es" / "dev.txt"), 30882)
    assert sentence.line == 30882
    assert sentence.tokens[:3] == ("Río", "de", "Janeiro")
    assert sentence.tags[:3] == ("B-LOC", "I-LOC", "I-LOC")


# --- bad input: the CLI's way of reporting it, in a subprocess ---------------------------------------------

CLI = """
import sys
from pram.errors import UserError
try:
    if sys.argv[1] == "check":
        from pram.data.check import data_check_command
        data_check_command(sys.argv[2], True)
    else:
        from pram.data.corpora import load_language
        load_language("wikiann", "xx", sys.argv[2])
except UserError as e:
    print(f"pram: error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def _language_folder(root: Path, data_dir: Path, train: bytes | None) -> Path:
    """root/wikiann/xx with real Hindi dev and test files (linked, not copied) and the given training file."""
    folder = root / "wikiann" / "xx"
    folder.mkdir(parents=True)
    for split in ("dev", "test"):
        (folder / f"{split}.tsv").symlink_to(data_dir / "wikiann" / "hi" / f"{split}.tsv")
    if train is not None:
        (folder / "train.tsv").write_bytes(train)
    return folder


BAD_TRAIN_FILES = {  # name: (content of train.tsv, what the message says after "<file>")
    "empty": (b"", ": empty file"),
    "binary": (b"hi:a\tO\n\x00\x01\x02\x03\xff\xfe", ":2: binary content"),
    "png image": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":2: binary content"),
    "no tag": (b"hi:a\tO\n\nhi:b\n", ":3: no tag on this line"),
    "malformed tag": (b"hi:a\tO\nhi:b\tB_PER\n", ":2: unknown tag 'B_PER'"),
    "type not in wikiann": (b"hi:a\tO\n\nhi:b\tO\nhi:c\tB-MISC\n", ":4: tag B-MISC has type MISC"),
}


def _run_cli(mode: str, path: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRAM_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CLI, mode, str(path)], check=False, capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60)


def _assert_one_line_error(result: subprocess.CompletedProcess, expected: str, cache: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("pram: error: ") and expected in result.stderr, result.stderr
    assert not cache.exists() or not any(cache.rglob("*"))  # no cache entry, whole or half-written


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_FILES))
def test_bad_training_file_is_one_line_exit_2_and_caches_nothing(case, data_dir, tmp_path):
    content, message = BAD_TRAIN_FILES[case]
    folder = _language_folder(tmp_path / "data", data_dir, content)
    result = _run_cli("load", tmp_path / "data", tmp_path / "cache")
    _assert_one_line_error(result, f"{folder / 'train.tsv'}{message}", tmp_path / "cache")


def test_unreadable_bad_folder_missing_split_and_wrong_path(data_dir, tmp_path):
    cache = tmp_path / "cache"
    folder = _language_folder(tmp_path / "a", data_dir, None)
    (folder / "train.tsv").mkdir()  # a folder where the file should be
    _assert_one_line_error(_run_cli("load", tmp_path / "a", cache), f"{folder / 'train.tsv'}: is a folder",
                           cache)
    folder = _language_folder(tmp_path / "b", data_dir, b"hi:a\tO\n")
    (folder / "test.tsv").unlink()
    _assert_one_line_error(_run_cli("load", tmp_path / "b", cache), f"{folder / 'test.tsv'}: missing split",
                           cache)
    _assert_one_line_error(_run_cli("load", tmp_path / "nowhere", cache),
                           f"{tmp_path / 'nowhere'}: no such folder", cache)
    _assert_one_line_error(_run_cli("check", tmp_path / "nowhere.txt", cache),
                           f"{tmp_path / 'nowhere.txt'}: no such file", cache)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "train.txt"
    path.write_text("EU B-ORG\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads whatever the permissions: make the read fail as it does for a user

        def refuse(self):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(UserError, match=f"^{path}: cannot be read \\(permission denied\\)"):
        read_file(path)


def test_language_missing_everywhere_fails_fast_in_one_line(tmp_path, tmp_cache):
    start = time.perf_counter()
    with pytest.raises(UserError) as error:
        load_language("wikiann", "xx", tmp_path)
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"wikiann/xx not found under {tmp_path} and the hub copy could not be loaded (")
    assert message.endswith("pass --data-dir or set PRAM_DATA_DIR")
    with pytest.raises(UserError, match=r"no public copy of conll/de"):
        load_language("conll", "de", tmp_path)
    assert not tmp_cache.exists()


# --- corpora, Arrow and its cache ------------------------------------------------------------------------

def test_languages_and_folders(data_dir):
    assert available_languages("conll", data_dir) == ["de", "en", "es", "nl"]
    assert available_languages("wikiann", data_dir) == ["ar", "en", "hi", "zh"]
    assert language_dir("conll", "es", data_dir) == data_dir / "conll2002" / "es"
    assert language_dir("wikiann", "sw", data_dir) == data_dir / "wikiann" / "sw"
    with pytest.raises(UserError, match="unknown corpus 'ontonotes'"):
        available_languages("ontonotes", data_dir)


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRAM_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="pass --data-dir or set PRAM_DATA_DIR"):
        resolve_data_dir(None)
    (tmp_path / "data").mkdir()
    (tmp_path / "env").mkdir()
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("PRAM_DATA_DIR", "env")
    assert resolve_data_dir(None) == Path("env")
    assert resolve_data_dir(str(tmp_path)) == tmp_path
    with pytest.raises(UserError, match="no such folder \\(given by --data-dir\\)"):
        resolve_data_dir("missing")


def test_load_language_features_and_a_user_added_language(data_dir, tmp_path, tmp_cache):
    folder = _language_folder(tmp_path, data_dir, None)
    (folder / "train.tsv").symlink_to(data_dir / "wikiann" / "hi" / "train.tsv")
    (folder / "extra.tsv").symlink_to(data_dir / "wikiann" / "hi" / "extra.tsv")
    corpus = load_language("wikiann", "xx", tmp_path)
    assert {split: len(data) for split, data in corpus.items()} == {"train": 5000, "dev": 1000, "test": 1000,
                                                                   "extra": 1853}
    assert corpus["train"].features["ner_tags"].feature.names == LABELS["wikiann"]
    assert set(corpus["dev"]["lang"]) == {"xx"}
    names = corpus["train"].features["ner_tags"].feature.names
    entities = sum(names[t].startswith("B-") for tags in corpus["train"]["ner_tags"] for t in tags)
    assert entities == 6124
    assert len(list((tmp_cache / "arrow").iterdir())) == 4  # one entry per split, no temporary folder left


def test_second_load_comes_from_the_cache_and_is_much_faster(data_dir, tmp_cache):
    start = time.perf_counter()
    first = load_language("conll", "en", data_dir, tmp_cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = load_language("conll", "en", data_dir, tmp_cache)
    warm = time.perf_counter() - start
    assert warm < 0.5 * cold, (cold, warm)
    assert second["train"].cache_files  # memory-mapped from the Arrow cache, not read again
    assert len(second["train"]) == 14041 and second["train"][0] == first["train"][0]
    # LEICESTERSHIRE: its I-ORG is read as B-ORG (3)
    assert second["dev"][0]["ner_tags"] == [0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]


def test_an_interrupted_cache_write_leaves_no_entry(data_dir, tmp_cache, monkeypatch):
    import datasets

    def interrupted(self, path, **kwargs):
        (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_language("wikiann", "hi", data_dir)
    assert list((tmp_cache / "arrow").iterdir()) == []


def test_a_changed_file_is_read_again(data_dir, tmp_path, tmp_cache):
    folder = _language_folder(tmp_path, data_dir, (data_dir / "wikiann" / "hi" / "dev.tsv").read_bytes())
    train = folder / "train.tsv"
    before = load_language("wikiann", "xx", tmp_path)["train"]
    first_token = before[0]["tokens"][0]
    train.write_text(train.read_text(encoding="utf-8").replace(f"hi:{first_token}\t", "hi:CHANGED\t", 1),
                     encoding="utf-8")
    after = load_language("wikiann", "xx", tmp_path)["train"]
    assert after[0]["tokens"][0] == "CHANGED" and after[1:5]["tokens"] == before[1:5]["tokens"]
    assert len([e for e in (tmp_cache / "arrow").iterdir() if e.name.startswith("wikiann-xx-train-")]) == 2


# --- label sets across corpora ---------------------------------------------------------------------------

def test_shared_label_set_of_conll_and_wikiann():
    names, why = shared_label_set(LABELS["conll"], LABELS["wikiann"], "conll", "wikiann")
    assert names == LABELS["wikiann"]
    assert why == "MISC is in conll but not wikiann: its tags are read as O in both"
    assert shared_label_set(LABELS["wikiann"], LABELS["conll"], "wikiann", "conll")[0] == LABELS["wikiann"]
    assert shared_label_set(LABELS["conll"], LABELS["conll"]) == (LABELS["conll"], "")


def test_restrict_tags():
    tags = ["B-PER", "I-PER", "O", "B-MISC", "I-MISC", "B-LOC"]
    assert restrict_tags(tags, {"PER", "ORG", "LOC"}) == ["B-PER", "I-PER", "O", "O", "O", "B-LOC"]
