"""The AstroDrizzle chain as recipe steps: static mask, sky, separate drizzle,
median, blot, cosmic rays and final drizzle, with their array algorithms."""
