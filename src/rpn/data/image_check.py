"""Checking every image of a split before training starts.

:func:`check_images` decodes every image once (JPEGs at 1/8 scale with
Pillow's ``draft``, which still reads and entropy-decodes the whole
bitstream, so it finds truncated and broken data as a full decode does)
by the rules of :mod:`rpn.data.images`, in worker processes that die with their
parent, with a progress bar. Symbolic links are followed; a dangling link
or a loop of links is a bad file, named as such. Sizes are ``(height, width)`` in pixels.
A Ctrl-C ends the check and its workers at any moment: one that arrives
while the workers fork waits until they have (:func:`rpn.processes.signals.signals_held`),
and one that Python swallowed in a finalizer is raised at the next result
(:func:`rpn.processes.signals.interrupts_kept`).
"""
import contextlib
import functools
import multiprocessing
import os
import signal
import sys
from typing import List, NamedTuple, Optional, Tuple

from tqdm import tqdm

from ..processes.children import die_with_parent
from ..processes.signals import interrupts_kept, signals_held
from ..runs.fileio import link_problem
from .images import BadImageError, _expected, _read, _warn_truncated

__all__ = ["check_images", "ImageCheck"]


class ImageCheck(NamedTuple):
    """What :func:`check_images` found, in the order of its ``paths``:
    ``sizes`` ``(height, width)`` after the orientation rule (``None`` if
    bad); ``bad`` ``(path, reason)`` for every bad file; ``truncated`` the
    paths readable only as truncated (they have sizes)."""
    sizes: List[Optional[Tuple[int, int]]]
    bad: List[Tuple[str, str]]
    truncated: List[str]


def _check_one(job):
    """Worker: ``(size or None, reason or None, truncated)`` of one file."""
    path, expected = job
    try:
        _, size, truncated = _read(path, expected, "check")
        return size, None, truncated
    except BadImageError as error:
        return None, error.reason, False
    except FileNotFoundError:
        return None, link_problem(path) or "file not found", False
    except OSError as error:
        return None, link_problem(path) or f"cannot open the file: {error.strerror or error}", \
            False
    except Exception as error:   # anything a broken file makes a decoder raise
        return None, f"cannot read: {type(error).__name__}: {error}", False


def _init_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent handles Ctrl-C
    die_with_parent()
    if hasattr(signal, "pthread_sigmask"):          # forked with them held (signals_held)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def check_images(paths, expected_sizes=None, *, num_workers=None, progress=True,
                 desc="checking images"):
    """Decode every image of ``paths`` once (JPEGs at 1/8 scale) and compare
    it with ``expected_sizes[i]`` (``(height, width)`` or ``None``) by the
    orientation rule of :func:`read_image`. ``num_workers`` processes
    (``None``: the cores this process may use; 0: in this process) share
    the work; a tqdm bar on stderr shows it unless ``progress=False``.
    Returns an :class:`ImageCheck` in the order of ``paths``; one
    :class:`TruncatedImageWarning` names every truncated file."""
    paths = [os.fspath(p) for p in paths]
    if expected_sizes is None:
        expected_sizes = [None] * len(paths)
    if len(expected_sizes) != len(paths):
        raise ValueError(f"{len(expected_sizes)} expected sizes for {len(paths)} paths; "
                         "expected one (or None) a path")
    jobs = [(p, _expected(s, f"expected_sizes[{i}] ({p})"))
            for i, (p, s) in enumerate(zip(paths, expected_sizes))]
    if num_workers is None:     # the cores this process may run on
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    workers = int(num_workers)
    if workers < 0:
        raise ValueError(f"num_workers must be None or >= 0, got {num_workers}")
    workers, results = min(workers, len(jobs)), []
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(jobs), desc=desc, unit="img",
                                       file=sys.stderr, disable=not progress))
        check_interrupted = stack.enter_context(interrupts_kept())
        run = map
        if workers:
            # a Ctrl-C while the workers fork waits for the end of this block
            with signals_held():
                pool = multiprocessing.get_context().Pool(workers, initializer=_init_worker)
                stack.callback(pool.join)

                def end_early(kind, *_):    # an error, or Ctrl-C (which the workers ignore)
                    if kind is not None:
                        pool.terminate()
                stack.push(end_early)
            run = functools.partial(pool.imap, chunksize=max(1, min(8, len(jobs) // (
                workers * 16))))
        for result in run(_check_one, jobs):
            check_interrupted()             # a Ctrl-C a finalizer swallowed
            results.append(result)
            bar.update()
        check_interrupted()
        if workers:
            pool.close()                    # done: the workers end by themselves
    check = ImageCheck([size for size, _, _ in results],
                       [(p, reason) for p, (_, reason, _) in zip(paths, results) if reason],
                       [p for p, (_, _, cut) in zip(paths, results) if cut])
    if check.truncated:
        _warn_truncated(check.truncated, 2)
    return check
