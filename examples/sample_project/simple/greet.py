"""A module simple enough for the conditional topology's `otherwise` branch."""


def greeting(name: str) -> str:
    return f"Hello, {name}!"


def shout(text: str) -> str:
    if not text:
        return text
    return text.upper() + "!"
