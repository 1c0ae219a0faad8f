"""Writers and readers: atomic files, rasters (GeoTIFF/NetCDF/PNG), manifests, observation tables."""
