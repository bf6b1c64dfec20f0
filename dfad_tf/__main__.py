"""`python -m dfad_tf`: lists the binaries, each with its first docstring line."""

import ast
import importlib.util
import pkgutil

from dfad_tf import cli


def binaries():
    """`[(command, module, summary)]` of every binary in dfad_tf.cli, read without importing them (no TensorFlow)."""
    found = []
    for module in pkgutil.iter_modules(cli.__path__):
        name = f"dfad_tf.cli.{module.name}"
        with open(importlib.util.find_spec(name).origin) as f:
            tree = ast.parse(f.read())
        if any(isinstance(node, ast.FunctionDef) and node.name == "run" and not node.args.args  # a binary's entry
               for node in tree.body):
            summary = (ast.get_docstring(tree) or "").splitlines()[0]
            found.append((f"dfad-{module.name.replace('_', '-')}", name, summary))
    return found


def main():
    print("dfad_tf binaries (each explains itself with --help, every flag with --helpfull):\n")
    rows = binaries()
    width = max(len(command) for command, _, _ in rows)
    for command, module, summary in rows:
        print(f"  {command:<{width}}  {summary}\n  {'':<{width}}  (or: python -m {module})")


if __name__ == "__main__":
    main()
