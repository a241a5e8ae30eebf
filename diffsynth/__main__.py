"""`python -m diffsynth ...` (and so `accelerate launch -m diffsynth train ...`)."""

from diffsynth.cli import main

if __name__ == "__main__":
    main()
