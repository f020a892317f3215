"""Publishing a checkpoint: one task as a standard transformers model (`export`) and a checkpoint or
export to the Hugging Face Hub (`push`)."""
