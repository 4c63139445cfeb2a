import gzip

import numpy as np
import pytest

from data_pipeline.errors import DataValidationError
from data_pipeline.registry import (
    DATA_DIR_ENV,
    DEFAULT_DATASET,
    MMREC_DATASETS,
    PROJECT_ROOT,
    missing_features_message,
    resolve_dataset,
)

DATA = PROJECT_ROOT / "data"
#: The link in MMRec's README ("Download from Google Drive: Baby/Sports/Elec").
MMREC_DRIVE = "https://drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG?usp=sharing"


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """A $MRDIB_DATA_DIR holding one dataset, 'mine', and one folder without an .inter file."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mine.inter").write_text("userID\titemID\tx_label\n")
    (tmp_path / "scratch").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    return tmp_path


def test_default_is_the_shipped_tiktok_folder(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert DEFAULT_DATASET == "tiktok"
    location = resolve_dataset()
    assert (location.name, location.folder) == ("tiktok", DATA / "tiktok")
    assert location.feature_folder == DATA / "tiktok"
    assert location.inter_file == DATA / "tiktok" / "tiktok.inter"


def test_names_are_found_under_the_data_dir_environment_variable(user_data):
    location = resolve_dataset("mine")
    assert (location.folder, location.feature_folder) == (user_data / "mine", user_data / "mine")
    assert location.searched == (DATA / "mine", user_data / "mine") and location.by_name


def test_project_data_comes_before_the_environment_variable(user_data):
    (user_data / "tiktok").mkdir()
    (user_data / "tiktok" / "tiktok.inter").write_text("userID\titemID\tx_label\n")
    (user_data / "tiktok" / "image_feat.npy").write_bytes(b"")
    assert resolve_dataset("tiktok").folder == DATA / "tiktok"


@pytest.mark.parametrize("name", ["baby", "sports", "clothing"])
def test_amazon_datasets_are_shipped_as_gzipped_interactions(monkeypatch, name):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    location = resolve_dataset(name)
    assert location.inter_file == DATA / name / f"{name}.inter.gz"
    assert location.feature_folder == DATA / name
    assert not list((DATA / name).glob("*_feat.npy"))


@pytest.mark.parametrize("name", ["baby", "sports", "clothing"])
def test_known_item_counts_match_the_shipped_files(name):
    rows = np.array(gzip.decompress((DATA / name / f"{name}.inter.gz").read_bytes()).split()[3:], np.int64)
    assert MMREC_DATASETS[name].n_items == rows.reshape(-1, 3)[:, 1].max() + 1
    assert MMREC_DATASETS[name].feature_dims == {"image": 4096, "text": 384}


def test_features_in_the_data_dir_variable_complete_a_shipped_interaction_file(tmp_path, monkeypatch):
    (tmp_path / "sports").mkdir()
    for modality in ("image", "text"):
        (tmp_path / "sports" / f"{modality}_feat.npy").write_bytes(b"")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    location = resolve_dataset("sports")
    assert (location.folder, location.feature_folder) == (DATA / "sports", tmp_path / "sports")


def test_a_complete_folder_wins_so_features_keep_their_own_interaction_file(tmp_path, monkeypatch):
    (tmp_path / "sports").mkdir()
    (tmp_path / "sports" / "sports.inter").write_text("userID\titemID\tx_label\n")
    (tmp_path / "sports" / "image_feat.npy").write_bytes(b"")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    location = resolve_dataset("sports")
    assert (location.folder, location.feature_folder) == (tmp_path / "sports", tmp_path / "sports")


def test_unknown_name_lists_places_searched_and_datasets_found(user_data):
    with pytest.raises(DataValidationError) as error:
        resolve_dataset("nope")
    message = str(error.value)
    assert "Unknown dataset 'nope'" in message
    assert f"{DATA}: baby, clothing, sports, tiktok" in message
    found = message.split("Datasets found: ")[1].split(". Put")[0]
    listed = dict(entry.rsplit(": ", 1) for entry in found.split("; "))
    assert listed[str(user_data)] == "mine"  # 'scratch' has no scratch.inter: not a dataset


def test_shared_data_beside_the_project_is_not_searched(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_dataset("sports").searched == (DATA / "sports",)


def test_data_dir_takes_any_folder_and_names_it_after_the_folder(tmp_path):
    (tmp_path / "baby").mkdir()
    location = resolve_dataset(data_dir=tmp_path / "baby")
    assert (location.name, location.folder) == ("baby", tmp_path / "baby")
    assert location.feature_folder == tmp_path / "baby"
    assert location.searched == (tmp_path / "baby",) and not location.by_name
    assert resolve_dataset("other", tmp_path / "baby").name == "other"


def test_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataValidationError, match="not a folder"):
        resolve_dataset(data_dir=tmp_path / "missing")


def test_both_plain_and_gzipped_interaction_files_are_ambiguous(tmp_path):
    (tmp_path / "baby").mkdir()
    (tmp_path / "baby" / "baby.inter").write_text("")
    (tmp_path / "baby" / "baby.inter.gz").write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"baby: both baby\.inter and baby\.inter\.gz exist"):
        _ = resolve_dataset(data_dir=tmp_path / "baby").inter_file


def test_missing_features_message_for_an_mmrec_dataset_names_files_shapes_source_and_places(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    message = missing_features_message(resolve_dataset("sports"))
    assert message == (
        f"dataset 'sports': no feature files (<modality>_feat.npy) in {DATA / 'sports'}/. A multimodal "
        "backbone needs image_feat.npy (float32 [18357, 4096], row i = itemID i) and text_feat.npy "
        "(float32 [18357, 384], row i = itemID i). MMRec publishes its preprocessed datasets with these "
        f'features: its README says "Download from Google Drive: Baby/Sports/Elec", {MMREC_DRIVE}. '
        f"Put the files in {DATA / 'sports'}/ or $MRDIB_DATA_DIR/sports/. ID-only backbones (lightgcn) "
        "train without features."
    )
    assert "\n" not in message


def test_missing_features_message_lists_the_data_dir_variable_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    message = missing_features_message(resolve_dataset("baby"))
    assert "float32 [7050, 4096]" in message and "float32 [7050, 384]" in message
    assert f"Put the files in {DATA / 'baby'}/ or {tmp_path / 'baby'}/." in message


def test_missing_features_message_for_any_other_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    message = missing_features_message(resolve_dataset(data_dir=tmp_path / "mine"))
    for expected in ("image_feat.npy", "4096-d", "text_feat.npy", "384-d", "max(itemID) + 1", MMREC_DRIVE):
        assert expected in message
    assert f"Put the files in {tmp_path / 'mine'}/. " in message and "MRDIB_DATA_DIR" not in message
