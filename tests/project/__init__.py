"""The project as files: layout, settings files, image, tools."""
