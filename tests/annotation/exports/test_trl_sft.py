"""The SFT export (written responses) trains with TRL: JSON lines and parquet load
with ``datasets`` and TRL's SFTTrainer runs two steps on them, with the tiny
Llama and character tokenizer of ``test_trl`` (nothing is downloaded), for a
study of HH-RLHF conversations and one of plain-text prompts, in both forms.

What it learns is checked token by token: in the prompt/completion form the
tokens it is trained on (its labels) are exactly the written
response, after the assistant cue for a conversation; in the messages form the
sequence ends with the chat template's assistant header and the response.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from trl import SFTConfig, SFTTrainer

from annotation.exports.kinds import sft
from annotation.imports.records import candidate_content_hash
from annotation.models import Candidate, Membership, Prompt, Study
from tests.annotation.exports.chats import hh_study, text_study
from tests.annotation.exports.test_trl import ASSISTANT_HEADER, HH_CUE, char_tokenizer, load, tiny_llama
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _write_responses(study: Study) -> dict[int, str]:
    """A written response to every prompt of the study, as an annotator's rewrite is stored."""
    writer = UserFactory(username="writer")
    Membership.objects.create(user=writer, study=study, role=Membership.Role.ANNOTATOR)
    written = {}
    for n, prompt in enumerate(Prompt.objects.filter(study=study).order_by("id")):
        text = f"A better reply, number {n}."
        Candidate.objects.create(
            study=study, prompt=prompt, text=text, source="human", author=writer,
            content_hash=candidate_content_hash(prompt_hash=prompt.content_hash, text=text),
        )  # fmt: skip
        written[prompt.id] = text
    return written


def sft_trainer(dataset, tmp_path: Path) -> SFTTrainer:
    tokenizer = char_tokenizer()
    args = SFTConfig(
        output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", max_length=512, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    return SFTTrainer(model=tiny_llama(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer)


@pytest.mark.parametrize("form", [sft.MESSAGES_FORM, sft.PROMPT_COMPLETION])
@pytest.mark.parametrize("kind", ["conversation", "plain text"])
def test_sft_trainer_trains_two_steps_on_the_written_responses(kind: str, form: str, tmp_path: Path):
    study = hh_study() if kind == "conversation" else text_study()
    written = _write_responses(study)
    loaded = {key: load(study, key, form=form, tmp_path=tmp_path) for key in ("sft.jsonl", "sft.parquet")}
    columns = ["messages"] if form == sft.MESSAGES_FORM else ["prompt", "completion"]
    same = [*columns, "candidate_id", "prompt_id", "author", "revises_id"]
    rows = [loaded[key].select_columns(same).to_list() for key in loaded]
    assert rows[0] == rows[1], "both formats hold the same rows"
    dataset = loaded["sft.parquet"]
    assert dataset.num_rows == len(written) and set(dataset["form"]) == {form}
    assert {row["prompt_id"]: row["author"] for row in dataset} == dict.fromkeys(written, "writer")

    trainer = sft_trainer(dataset.select_columns(columns), tmp_path)
    assert len(trainer.train_dataset) == len(written), "no response was dropped"
    decode = trainer.processing_class.decode
    replies = sorted(written.values())
    if form == sft.PROMPT_COMPLETION:
        learned, prompts = [], []
        for row in trainer.train_dataset:
            # TRL folds the completion mask into the labels: -100 is a token it does not learn.
            ids, labels = row["input_ids"], row["labels"]
            learned.append(decode([t for t, label in zip(ids, labels, strict=True) if label != -100]))
            prompts.append(decode([t for t, label in zip(ids, labels, strict=True) if label == -100]))
        # The completion is the reply (after the space that keeps it off the prompt), then end of sequence.
        assert sorted(text.removeprefix(" ").removesuffix("<eos>") for text in learned) == replies
        if kind == "conversation":
            assert all(p.endswith(HH_CUE) for p in prompts), "the prompt ends at the assistant's turn"
    else:
        sequences = [decode(row["input_ids"]) for row in trainer.train_dataset]
        assert sorted(s[s.rindex(ASSISTANT_HEADER) + len(ASSISTANT_HEADER) :].rstrip("\n") for s in sequences) == (
            replies
        )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"SFTTrainer [{kind}, {form}]: {dataset.num_rows} responses, losses {losses}")
    assert trainer.state.global_step == 2 and len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
