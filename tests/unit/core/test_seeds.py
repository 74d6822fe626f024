"""Reading seed files: a folder of .txt files or a JSONL file, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsdesk.seeds import SeedFileError, add_seeds, read_seeds
from newsdesk.store import Seed, Store


def test_folder_of_text_files(tmp_path: Path) -> None:
    (tmp_path / "b_story.txt").write_text("Second story text.", encoding="utf-8")
    (tmp_path / "a_story.txt").write_text("First story text.", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    seeds = list(read_seeds(tmp_path))
    assert [(s.id, s.text) for s in seeds] == [
        ("a_story", "First story text."),
        ("b_story", "Second story text."),
    ]


def test_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    rows = [{"id": "x1", "title": "T", "text": "Alpha."}, {"id": 7, "text": "Beta.", "source": "Wire"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    seeds = list(read_seeds(path))
    assert [(s.id, s.title, s.source, s.text) for s in seeds] == [
        ("x1", "T", None, "Alpha."),
        ("7", None, "Wire", "Beta."),
    ]


@pytest.mark.parametrize("line", ['{"id": "x"}', "not json", '["x", "y"]'])
def test_bad_jsonl_line_names_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"id": "ok", "text": "Fine."}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:2"):
        list(read_seeds(path))


@pytest.mark.parametrize("text", ["", "  \n", "<script>Russia</script>", "1 2 3."])
def test_a_seed_without_words_is_named_as_the_api_would_refuse_it(tmp_path: Path, text: str) -> None:
    (tmp_path / "empty.txt").write_text(text, encoding="utf-8")
    with pytest.raises(SeedFileError, match=r"empty\.txt: the text contains no words"):
        list(read_seeds(tmp_path))
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"id": "x", "text": text}) + "\n", encoding="utf-8")
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:1: the text contains no words"):
        list(read_seeds(path))


def test_non_utf8_text_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SeedFileError, match=r"latin1\.txt: not UTF-8"):
        list(read_seeds(tmp_path))


def test_loading_twice_changes_nothing(tmp_path: Path, store: Store) -> None:
    (tmp_path / "one.txt").write_text(
        "A seed about talks in Geneva between the two delegations.", encoding="utf-8"
    )
    assert add_seeds(store, read_seeds(tmp_path)) == (1, 0)
    assert add_seeds(store, read_seeds(tmp_path)) == (0, 1)


def test_a_new_title_or_source_replaces_the_old_one_without_a_new_sketch(store: Store) -> None:
    text = "A seed about talks in Geneva between the two delegations."
    sketches: list[str] = []

    def sketch(value: str) -> bytes:
        sketches.append(value)
        return b"sketch"

    assert store.add_seeds([Seed("w1", text, "Old", "Wire")], sketch) == (1, 0)
    assert store.add_seeds([Seed("w1", text, "New", None)], sketch) == (1, 0)
    seed = store.get_seed("w1")
    assert seed is not None
    assert (seed.title, seed.source, seed.text) == ("New", None, text)
    assert sketches == [text]  # the text did not change, so neither did its sketch
    assert store.add_seeds([Seed("w1", text, "New", None)], sketch) == (0, 1)


@pytest.mark.parametrize("name", ["x" * 129, "my story", "-dash", ".hidden", "caf\u00e9"])
def test_a_file_name_that_is_not_a_seed_id_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / "fine.txt").write_text("A fine seed.", encoding="utf-8")
    (tmp_path / f"{name}.txt").write_text("A seed with an unusable name.", encoding="utf-8")
    with pytest.raises(SeedFileError, match=r"\.txt: .*not a valid seed id"):
        list(read_seeds(tmp_path))


@pytest.mark.parametrize("seed_id", ["b/c", "x" * 150, "", " x", "x\n", -7, "a?b"])
def test_a_jsonl_id_that_is_not_a_seed_id_names_the_line(tmp_path: Path, seed_id: object) -> None:
    path = tmp_path / "seeds.jsonl"
    rows = [{"id": "ok", "text": "Fine."}, {"id": seed_id, "text": "Unusable id."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:2: .*not a valid seed id"):
        list(read_seeds(path))


def test_the_longest_ids_and_every_allowed_character_are_read(tmp_path: Path) -> None:
    longest = "A" + "z" * 127
    (tmp_path / f"{longest}.txt").write_text("The longest id.", encoding="utf-8")
    (tmp_path / "0_a.b-C.txt").write_text("Every kind of character.", encoding="utf-8")
    assert [seed.id for seed in read_seeds(tmp_path)] == ["0_a.b-C", longest]


def test_a_seed_path_that_cannot_be_read_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "folder.txt").mkdir()  # a folder named like a seed file
    with pytest.raises(SeedFileError, match=r"folder\.txt: cannot be read"):
        list(read_seeds(tmp_path))
