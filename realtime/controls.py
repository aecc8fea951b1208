"""What a user can change while the loop runs (a key in the window, a call to /control), held in one
thread-safe place that the loop reads each frame: switching costs a lookup, not a reload."""
from __future__ import annotations

import threading

ACTIONS = ("recalibrate", "next_avatar", "toggle_swap", "quit")


class Controls:
    def __init__(self, avatars: list[str], swap_available: bool = False, swap: bool = False):
        self.avatars = avatars
        self.swap_available = swap_available
        self.avatar = 0
        self.swap = swap and swap_available
        self.recalibrations = 0
        self.quit = threading.Event()
        self._recalibrate = False
        self._lock = threading.Lock()

    def apply(self, action: str) -> dict:
        """Carry out one of ACTIONS and return the new state; ValueError for anything else."""
        with self._lock:
            if action == "recalibrate":
                self._recalibrate = True
            elif action == "next_avatar":
                self.avatar = (self.avatar + 1) % len(self.avatars)
            elif action == "toggle_swap":
                self.swap = not self.swap and self.swap_available
            elif action == "quit":
                self.quit.set()
            else:
                raise ValueError(f"unknown action '{action}'; use one of {', '.join(ACTIONS)}")
        return self.state()

    def take_recalibration(self) -> bool:
        """True once per request: the next frame with a face becomes the reference pose."""
        with self._lock:
            wanted, self._recalibrate = self._recalibrate, False
            if wanted:
                self.recalibrations += 1
            return wanted

    def state(self) -> dict:
        return {"avatar": self.avatar, "avatar_name": self.avatars[self.avatar], "avatars": len(self.avatars),
                "swap": self.swap, "swap_available": self.swap_available,
                "recalibrations": self.recalibrations, "running": not self.quit.is_set()}
