"""REST routes: thin translations between HTTP and the charts service."""
