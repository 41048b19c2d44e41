"""SEMSEARCH_EMBEDDING_MODEL drives the local backend: the bundled model by name or a folder."""

from pathlib import Path

import pytest

from semsearch.config import Settings
from semsearch.core.backends import build_backend
from semsearch.core.embedding import bundled_model_path


def test_a_local_model_folder_is_loaded_and_named_in_the_model_id(tmp_path, local_backend):
    folder = tmp_path / "team-minilm"
    folder.symlink_to(Path(bundled_model_path()), target_is_directory=True)
    backend = build_backend(Settings(embedding_model=str(folder)))
    assert backend.model_id == "local/team-minilm" != local_backend.model_id
    assert backend.dimension == local_backend.dimension


def test_a_model_that_is_neither_bundled_nor_a_folder_is_a_config_error():
    with pytest.raises(ValueError, match=r"SEMSEARCH_EMBEDDING_MODEL='text-embedding-3-small'.*"):
        build_backend(Settings(embedding_model="text-embedding-3-small"))
