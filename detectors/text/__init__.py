"""MIME text extraction shared by the content and leak detectors: transfer and charset
decoding, HTML to text, document readers (PDF, DOCX, XLSX) and archives, under hard limits.
"""
