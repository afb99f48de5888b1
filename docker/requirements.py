"""Prints the requirements of pyproject.toml's dependencies plus the named extras, one a line, for `pip install -r`.

The dependency layers of the Dockerfile install these before the source is copied in, so that a change to the code
rebuilds only the small layer that installs mmft itself.
Usage: python3 requirements.py PYPROJECT [EXTRA...]
"""

import sys
import tomllib


def main() -> None:
    pyproject_path, *extras = sys.argv[1:]
    with open(pyproject_path, "rb") as file:
        project = tomllib.load(file)["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    print("\n".join(dict.fromkeys(requirements)))


if __name__ == "__main__":
    main()
