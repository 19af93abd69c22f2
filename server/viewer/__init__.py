"""Static assets of the ticket viewer page (HTML layout, CSS, JS), served by the server itself.

No framework and no CDN: the Content-Security-Policy allows only this origin.
"""
