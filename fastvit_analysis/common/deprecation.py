"""Old public names kept for one release, each with a DeprecationWarning naming the new one.

- `renamed_kwargs(old="new", ...)`: a decorator that maps old keyword arguments to new ones;
- `renamed_attribute("old", "new")`: a property that reads and writes the new attribute;
- `renamed_fields(old="new", ...)`: a class decorator (above ``@dataclass``) doing both for fields:
  the constructor takes `old=` and the instance has `.old`, each warning;
- `module_aliases({"Old": New}, module)`: a module `__getattr__` for renamed classes/functions.

`inspect.signature` of a decorated function shows the new names only (the vocabulary test scans it).

Example:
    >>> import warnings
    >>> @renamed_kwargs(chunk_size="per_pass")
    ... def f(x, *, per_pass=1):
    ...     return x * per_pass
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     f(2, chunk_size=3), str(caught[0].message)
    (6, 'f(): chunk_size= is deprecated, use per_pass=')
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Mapping, TypeVar

__all__ = ["renamed_kwargs", "renamed_attribute", "renamed_fields", "module_aliases", "DEPRECATED_KWARGS"]

F = TypeVar("F", bound=Callable[..., Any])

DEPRECATED_KWARGS = "__deprecated_kwargs__"  # attribute of a decorated function: {old: new}


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Accept each old keyword `old=` as `new=` with a DeprecationWarning; both at once is a TypeError."""
    def decorate(fn: F) -> F:
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{name}(): pass {new}= only ({old}= is its deprecated name)")
                    warnings.warn(f"{name}(): {old}= is deprecated, use {new}=", DeprecationWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        setattr(wrapper, DEPRECATED_KWARGS, {**getattr(fn, DEPRECATED_KWARGS, {}), **renames})
        return wrapper  # type: ignore[return-value]
    return decorate


def renamed_attribute(old: str, new: str) -> property:
    """A property `old` that reads/writes `new`, with a DeprecationWarning.

    Example:
        >>> class R:
        ...     num_hvp = 3
        ...     n_hvp = renamed_attribute("n_hvp", "num_hvp")
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     R().n_hvp
        3
    """
    def warn(owner: Any) -> None:
        warnings.warn(f"{type(owner).__name__}.{old} is deprecated, use .{new}", DeprecationWarning, stacklevel=3)

    def get(self: Any) -> Any:
        warn(self)
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        warn(self)
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated name of `{new}`.")


def renamed_fields(**renames: str) -> Callable[[type], type]:
    """Class decorator for a dataclass whose fields were renamed: `old=` in the constructor and the
    attribute `.old` keep working (DeprecationWarning) for each ``old="new"``.

    Example:
        >>> import dataclasses, warnings
        >>> @renamed_fields(n_hvp="num_hvp")
        ... @dataclasses.dataclass
        ... class R:
        ...     num_hvp: int
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     R(n_hvp=4).n_hvp
        4
    """
    def decorate(cls: type) -> type:
        cls.__init__ = renamed_kwargs(**renames)(cls.__init__)  # type: ignore[misc]
        for old, new in renames.items():
            setattr(cls, old, renamed_attribute(old, new))
        return cls
    return decorate


def module_aliases(aliases: Mapping[str, Any], module: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that returns `aliases[name]` (the renamed object) with a
    DeprecationWarning; any other name raises AttributeError as usual."""
    def __getattr__(name: str) -> Any:
        if name in aliases:
            value = aliases[name]
            warnings.warn(f"{module}.{name} is deprecated, use {getattr(value, '__name__', value)}",
                          DeprecationWarning, stacklevel=2)
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
