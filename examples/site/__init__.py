"""An example partner site that uses credcheck's policy (README.md beside this file)."""
