"""LabWorld: the lab's own generated miniature world (chapter 0)."""
