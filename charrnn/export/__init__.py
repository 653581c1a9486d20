"""`charrnn export`: the model in other formats (formats) and as a web page (webpage)."""
