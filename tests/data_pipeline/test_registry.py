import pytest

from data_pipeline.errors import DataValidationError
from data_pipeline.registry import DATA_DIR_ENV, DEFAULT_DATASET, PROJECT_ROOT, resolve_dataset


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
    assert resolve_dataset() == ("tiktok", PROJECT_ROOT / "data" / "tiktok")


def test_names_are_found_under_the_data_dir_environment_variable(user_data):
    assert resolve_dataset("mine") == ("mine", user_data / "mine")


def test_project_data_comes_before_the_environment_variable(user_data):
    (user_data / "tiktok").mkdir()
    assert resolve_dataset("tiktok")[1] == PROJECT_ROOT / "data" / "tiktok"


def test_unknown_name_lists_places_searched_and_datasets_found(user_data):
    with pytest.raises(DataValidationError) as error:
        resolve_dataset("nope")
    message = str(error.value)
    assert "Unknown dataset 'nope'" in message
    assert f"{PROJECT_ROOT / 'data'}: tiktok" in message
    assert f"{user_data}: mine" in message  # 'scratch' has no scratch.inter: not a dataset
    assert "scratch" not in message


def test_shared_data_beside_the_project_is_not_searched(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataValidationError, match="Unknown dataset 'sports'") as error:
        resolve_dataset("sports")
    assert "shared" not in str(error.value)


def test_data_dir_takes_any_folder_and_names_it_after_the_folder(tmp_path):
    (tmp_path / "baby").mkdir()
    assert resolve_dataset(data_dir=tmp_path / "baby") == ("baby", tmp_path / "baby")
    assert resolve_dataset("other", tmp_path / "baby") == ("other", tmp_path / "baby")


def test_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataValidationError, match="not a folder"):
        resolve_dataset(data_dir=tmp_path / "missing")
