"""ImageNet weights of the backbones, from MXNet's model store or a file.

Gluon's model zoo keeps each network's ImageNet weights in MXNet's model
store (``~/.mxnet/models``, or ``$MXNET_HOME/models``) as
``<name>-<short hash>.params``, downloaded on first use
(``model_store.get_model_file``). :func:`load_weights` loads such a file,
or any ``.params`` file saved from the same zoo network
(``net.save_parameters``), into a freshly built zoo network; a file that
holds another network's weights is one :class:`WeightsMismatchError` naming
the file, the network asked for and, when its parameter names and shapes
match one of :data:`rpn.settings.BACKBONES`, the network it holds.

Nothing here downloads unless asked (:func:`download_pretrained`, or
``--pretrained imagenet``).
"""
import os

from mxnet import base
from mxnet import ndarray as nd
from mxnet.gluon.model_zoo import model_store, vision

from ..settings import BACKBONES, DEFAULT_BACKBONE, check

__all__ = ["download_pretrained", "pretrained_file_name", "weights_path", "load_weights",
           "identify_weights", "WeightsMismatchError"]



class WeightsMismatchError(ValueError):
    """A weights file that does not hold the weights of the network asked for."""


def _default_root():
    return os.path.join(base.data_dir(), "models")


def pretrained_file_name(name=DEFAULT_BACKBONE):
    """The file name of ``name``'s ImageNet weights in MXNet's model store,
    e.g. ``resnet18_v2-a81db45f.params``."""
    check("backbone", name)
    return f"{name}-{model_store.short_hash(name)}.params"


def download_pretrained(root=None, *, name=DEFAULT_BACKBONE):
    """Download the ImageNet weights of the zoo network ``name`` (the
    chapter's ResNet-18 v2 by default) into MXNet's model store (``root``,
    default ``~/.mxnet/models``, or ``$MXNET_HOME/models``) unless they are
    there, and return the file's path. A failed download is a
    ``RuntimeError`` that says which file to put where."""
    check("backbone", name)
    root = os.path.expanduser(root or _default_root())
    try:
        return model_store.get_model_file(name, root=root)
    except Exception as error:  # the model store raises many kinds
        file_name = pretrained_file_name(name)
        raise RuntimeError(
            f"could not download the ImageNet weights of {name} into {root}: {error}. "
            f"Put the file {file_name} (from MXNet's model store, e.g. "
            f"{model_store.apache_repo_url}gluon/models/{file_name[:-7]}.zip, unzipped) "
            f"into {root}, or pass its path") from error


def weights_path(root, name=DEFAULT_BACKBONE):
    """The weights file of ``name`` that ``root`` names: ``root`` itself (a
    ``.params`` file), or the model store's file in the folder ``root``;
    ``None``: MXNet's model store, downloading the file when it is absent.
    A path that does not exist is a ``FileNotFoundError`` naming it (nothing
    is created or downloaded there)."""
    if root is None:
        return download_pretrained(name=name)
    root = os.path.expanduser(os.fspath(root))
    path = root if os.path.isfile(root) else os.path.join(root, pretrained_file_name(name))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no ImageNet weights of {name} at {root}: expected a .params file, or a "
            f"folder holding {pretrained_file_name(name)} (download them with "
            f"--pretrained imagenet, or rpn.download_pretrained(name={name!r}))")
    return path


def _signature(net):
    """``{structural name: shape}`` of a zoo network's parameters, shapes
    with 0 or -1 where Gluon infers a dimension later."""
    return {key: tuple(p.shape) for key, p in net._collect_params_with_prefix().items()}


def _fits(signature, arrays):
    if set(signature) != set(arrays):
        return False
    for key, shape in signature.items():
        held = arrays[key].shape
        if len(held) != len(shape) or any(0 < s != h for s, h in zip(shape, held)):
            return False
    return True


def identify_weights(path):
    """The zoo network of :data:`rpn.settings.BACKBONES` whose parameter
    names and shapes the ``.params`` file ``path`` holds, or ``None`` (not a
    parameter file, or no known network's)."""
    arrays = _try_load(path)
    if not isinstance(arrays, dict):
        return None
    for name in BACKBONES:
        if _fits(_signature(vision.get_model(name)), arrays):
            return name
    return None


def load_weights(net, path, name):
    """Load the ``.params`` file ``path`` into the zoo network ``net`` of
    ``name``. Another network's weights (or a file that is no parameter
    file) raise :class:`WeightsMismatchError` naming the file, ``name``
    and what the file seems to hold."""
    try:
        net.load_parameters(os.fspath(path))
    except Exception as error:  # MXNet raises several kinds for a wrong file
        held = identify_weights(path)
        if held is not None:
            seems = (f"it holds the weights of {held} (give --backbone {held}, "
                     f"backbone={held!r}, for them)")
        elif isinstance(_try_load(path), dict):
            seems = f"its parameters are none of the zoo networks' ({', '.join(BACKBONES)})"
        else:
            seems = "it is not an MXNet parameter file"
        lines = [line for line in str(error).splitlines()
                 if line.strip() and not line.startswith(("Traceback", "  File"))]
        detail = f"; MXNet says: {lines[-1].strip()[:200]}" if lines and held is None else ""
        raise WeightsMismatchError(f"{path} does not hold the ImageNet weights of {name}: "
                                   f"{seems}{detail}") from None
    return net


def _try_load(path):
    try:
        return nd.load(os.fspath(path))
    except Exception:  # MXNet raises MXNetError for a file it cannot read
        return None
