"""Time-ordered streams of IOs per device, whatever they come from (captures, replay files, foreign traces), as
columns (replayfile.IOChunk), and their way back into native replay files with a record of where they came
from (origin.json). Import, transform, stats and export all read and write through here."""
