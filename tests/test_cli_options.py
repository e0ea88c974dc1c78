"""The parser of the command line: each value's type checked where it is
parsed (docs/cli.md's list of options is compared by test_docs.py)."""
import pytest

from rpn.cli_options import KVSTORES, PRESET_NAMES, UsageError, build_parser


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_values_are_parsed_as_documented():
    args = parse("evaluate", "--checkpoint", "run", "--ks", "300,100,100", "--epoch", "best")
    assert args.command == "evaluate" and args.ks == (100, 300) and args.epoch == "best"
    assert parse("evaluate", "--checkpoint", "run", "--epoch", "3").epoch == 3
    train = parse("train", "--data", "synthetic", "--out", "r", "--seed", str(2 ** 32 - 1))
    assert train.seed == 2 ** 32 - 1 and train.workers >= 1
    assert parse("predict", "--checkpoint", "r", "--out", "o", "--top-k", "0").top_k == 0
    assert "default" in PRESET_NAMES and "dist_sync" in KVSTORES


@pytest.mark.parametrize("argv, words", [
    (("train", "--data", "synthetic", "--out", "r", "--seed", "-1"), "--seed"),
    (("train", "--data", "synthetic", "--out", "r", "--seed", str(2 ** 32)), "2**32 - 1"),
    (("train", "--data", "synthetic", "--out", "r", "--kvstore", "nccl"), "--kvstore"),
    (("evaluate", "--checkpoint", "r", "--ks", "100,0"), "at least 1"),
    (("evaluate", "--checkpoint", "r", "--epoch", "latest"), "--epoch"),
    (("predict", "--checkpoint", "r", "--out", "o", "--format", "voc"), "--format"),
    (("propose", "--checkpoint", "r", "--data", "d", "--out", "p", "--top-k", "0"), "--top-k"),
])
def test_a_bad_value_is_a_usage_error_naming_its_command(argv, words):
    with pytest.raises(UsageError, match=words.replace("*", r"\*")) as raised:
        parse(*argv)
    assert raised.value.command == f"rpn {argv[0]}"
