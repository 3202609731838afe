return {page_size = 100}
