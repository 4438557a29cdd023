"""Pictures of volumes: screenshots for reports and quick looks, the napari viewer."""
