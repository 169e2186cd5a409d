import sys

# The guard matters: forkserver and spawn workers import the main module as __mp_main__.
if __name__ == "__main__":
    from gpukit.cli import entry

    sys.exit(entry())
