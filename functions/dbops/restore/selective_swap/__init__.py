"""The selective swap: chosen tables' rows replaced in the live target in one short transaction, its locks up front."""
